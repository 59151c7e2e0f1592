"""Wire format, codec, ZeroMQ links, channels and CURVE security."""
