"""An account's statistics, kept by the worker from post events and read by ``/v1/stats``."""
