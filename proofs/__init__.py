"""The robustness theory of sparse regularization, stated, proved and property-tested.

Each module holds one result of the theory: its statement, a short proof, and hypothesis property
tests that run the library's public functions on every available array backend. Counter-examples
(a loss outside the hypotheses, a noise rate past the bound) are searched for and must be found, so
no property can pass vacuously.
"""
