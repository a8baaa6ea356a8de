"""The science: learning-rate scaling rules, the delta measurement, exponent fits and theory."""
