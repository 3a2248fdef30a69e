"""Publishing: the production trainer that retrains replicas A and B, measures them against
each other and against the serving version, holds back what the churn gate refuses, and
moves what passes into the model base path (``steadyrank trainer``).

May import every other room of ``steadyrank.model``; nothing imports it but the CLI.
"""
