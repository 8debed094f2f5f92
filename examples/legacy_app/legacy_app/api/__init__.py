"""Request handlers: plain functions the web layer calls with already-parsed arguments."""
