"""The asset graph, one folder per migration phase."""
