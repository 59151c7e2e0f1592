"""Membership managers as pure state machines (no I/O), and the simulator that drives them."""
