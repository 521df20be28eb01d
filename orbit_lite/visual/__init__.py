"""What a person looks at: annotated videos and the PNG figures of recognize, train and evaluate."""
