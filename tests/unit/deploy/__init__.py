"""Unit tests of the deployment files: Containerfile and deploy/k8s/."""
