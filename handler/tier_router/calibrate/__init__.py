"""`tier-router calibrate`: labelled requests in, readable rules that meet a quality target out."""
