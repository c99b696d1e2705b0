"""Unit tests of weft_client/."""
