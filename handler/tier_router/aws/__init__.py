"""AWS without boto3: one JSON-protocol client (`client`), its SigV4 signer (`sigv4`), and
the SSM Parameter Store source of provider and router keys (`ssm`). The DynamoDB store
(`tier_router.store.dynamodb`) is the client's other user.

Nothing is imported here: each module is paid for (on a Lambda cold start) only when used.
"""
