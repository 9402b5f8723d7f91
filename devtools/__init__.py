"""Developer tools for the userexport project; never deployed."""
