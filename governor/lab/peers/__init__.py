"""Controllers of other projects, written from their documentation, for comparison in the lab."""
