"""serkit: speech emotion recognition for the edge (the CLI lives here; the work lives in edge/, trainer/, convert/)."""
