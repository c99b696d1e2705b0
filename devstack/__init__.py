"""Local development stack: real backing servers from pip wheels."""
