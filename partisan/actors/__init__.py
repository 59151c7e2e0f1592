"""Pids, mailboxes, the actor runtime, GenServer, StateMachine, monitors and links."""
