"""Identity service: citizens, staff, machine clients, OTP login and tokens."""
