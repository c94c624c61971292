"""The domain: the procedure as data, the case model, policy decisions. Pure: no I/O, no clock."""
