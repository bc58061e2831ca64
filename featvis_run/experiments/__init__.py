"""The experiments a run executes (single, multi_image, diff) and what they share."""
