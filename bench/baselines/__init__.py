"""Small reference chat servers the benchmark measures Greenroom against."""
