"""Unit tests of services/runs/worker/stages/."""
