"""The reference web portal: the single window as citizens, officers and reviewers see it."""
