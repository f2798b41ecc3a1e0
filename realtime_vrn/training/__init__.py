"""Synthetic training data, training and evaluation of our own VRNs (``realtime-vrn data|train|eval``)."""
