"""OTP supervisors, and the supervisor of node OS processes."""
