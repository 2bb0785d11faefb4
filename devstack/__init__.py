"""Local development stack: the one-command demo and the end-to-end test harness."""
