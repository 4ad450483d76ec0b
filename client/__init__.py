"""The fedrec client: SDK and Flower ClientApp (private user embedding stays here)."""
