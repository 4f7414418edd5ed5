"""mailbot: an email intake bot for NACCS user-ID abolition requests (利用者IDの廃止申込)."""
