"""One module per book chapter: its tables, figures and takeaways (the notebooks call these)."""
