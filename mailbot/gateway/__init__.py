"""The gateway: every way mail comes in (SMTP, MDA pipe, IMAP) ends in ``store.store_message``.

A gateway stores the raw bytes durably and answers; it decodes nothing and decides nothing.
The intake worker picks the stored rows up later.
"""
