"""Example data sets for the demos and tests (generated offline from scikit-learn's digits);
not part of the snncompile library."""
