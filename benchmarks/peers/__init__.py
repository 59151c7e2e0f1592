"""``make bench-peers``: our call and cast workloads beside Ray's and Thespian's (see __main__)."""
