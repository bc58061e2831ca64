"""What is read from and written to disk: input images, output files, the manifest and the activation cache."""
