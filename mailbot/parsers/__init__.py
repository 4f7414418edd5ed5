"""Parsers: one module per input format, each turning text or bytes into a :class:`RawForm`."""
