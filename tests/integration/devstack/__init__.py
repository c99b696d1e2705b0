"""Tests of devstack/'s modules against real servers from the wheels, with real clients."""
