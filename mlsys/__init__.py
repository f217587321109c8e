"""mlsys: batch lead scoring."""
