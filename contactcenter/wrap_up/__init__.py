"""The agent's wrap-up (话后处理): what the call was about, saved to the call, customer, ticket and callbacks."""
