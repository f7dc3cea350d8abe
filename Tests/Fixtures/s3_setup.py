#!/usr/bin/env python3
"""Prepares a running moto_server for signed S3 tests and turns its signature checks on.

    python3 Tests/Fixtures/s3_setup.py --endpoint http://127.0.0.1:P --bucket B --key K --file F

moto_server checks nothing by default. Its authentication is governed by
INITIAL_NO_AUTH_ACTION_COUNT (env var, default infinity: never check); the same setting can be
changed at run time with `POST /moto-api/reset-auth` (body: the count). Once the count of
unauthenticated actions is used up, every request must carry a valid SigV4 signature made with
an access key that exists in moto's IAM, and the key's IAM policies must allow the action.

So this script, while moto still accepts anything (dummy credentials):
  1. creates an IAM user with an inline policy allowing s3:*, and an access key for it;
  2. creates a role the user may assume (same policy) and assumes it via STS, which gives
     temporary credentials with a session token;
  3. creates the bucket and uploads the object;
  4. POSTs `0` to /moto-api/reset-auth: from now on signatures and permissions are enforced.
It prints one JSON line: {"access_key_id", "secret_access_key", "session": {...}}.
"""
import argparse
import json
import urllib.request

import boto3

POLICY = json.dumps({"Version": "2012-10-17",
                     "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--region", default="us-east-1")
    args = ap.parse_args()

    common = dict(endpoint_url=args.endpoint, region_name=args.region,
                  aws_access_key_id="testing", aws_secret_access_key="testing")
    iam = boto3.client("iam", **common)
    iam.create_user(UserName="darter")
    iam.put_user_policy(UserName="darter", PolicyName="s3", PolicyDocument=POLICY)
    key = iam.create_access_key(UserName="darter")["AccessKey"]

    account = boto3.client("sts", **common).get_caller_identity()["Account"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % account},
        "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="darter-role", AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName="darter-role", PolicyName="s3", PolicyDocument=POLICY)
    sts = boto3.client("sts", **common)
    creds = sts.assume_role(RoleArn="arn:aws:iam::%s:role/darter-role" % account,
                            RoleSessionName="darter")["Credentials"]

    s3 = boto3.client("s3", **common)
    if args.region == "us-east-1":
        s3.create_bucket(Bucket=args.bucket)
    else:
        s3.create_bucket(Bucket=args.bucket,
                         CreateBucketConfiguration={"LocationConstraint": args.region})
    with open(args.file, "rb") as f:
        s3.put_object(Bucket=args.bucket, Key=args.key, Body=f.read())

    req = urllib.request.Request(args.endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
                                 headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(req).read()

    print(json.dumps({"access_key_id": key["AccessKeyId"],
                      "secret_access_key": key["SecretAccessKey"],
                      "session": {"access_key_id": creds["AccessKeyId"],
                                  "secret_access_key": creds["SecretAccessKey"],
                                  "session_token": creds["SessionToken"]}}), flush=True)


if __name__ == "__main__":
    main()
