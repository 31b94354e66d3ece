"""Flags and moderation of questions and answers (a part of the questions service).

The questions service owns the question page and its answers, so it records who flagged
what (one flag per user per item), the admins' hide/restore decisions, and the
moderation queue; answers and notify learn of decisions from moderation-decided.
"""
