"""The doctor directory: profiles, and the indexes that find doctors by specialty and place."""
