"""Reading and editing import statements and ``__all__`` without losing the user's comments."""
