"""Prometheus instruments and collectors, one registry per app."""
