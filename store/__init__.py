"""What must last: SQLModel tables and the small functions that read and write them."""
