"""Unit tests of protos/ and the code generated from them (weft/)."""
