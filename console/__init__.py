"""The Weft console: server-rendered pages under /app for people (not programs)."""
