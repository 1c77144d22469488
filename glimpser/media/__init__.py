"""Media: snapshot storage (local / S3), snapshot rows, thumbnails, image helpers, timelapses
and retention."""
