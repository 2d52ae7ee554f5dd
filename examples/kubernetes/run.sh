#!/bin/sh
# Runs the three Jobs in order: Kubernetes Jobs have no dependencies of
# their own, so each step waits for the previous one to complete.
set -eu
cd "$(dirname "$0")"
kubectl apply -f 00-storage.yaml
kubectl delete job seedlm-plan seedlm-parts seedlm-merge --ignore-not-found
kubectl apply -f 01-plan.yaml
kubectl wait --for=condition=complete --timeout=24h job/seedlm-plan
kubectl apply -f 02-parts.yaml
kubectl wait --for=condition=complete --timeout=24h job/seedlm-parts
kubectl apply -f 03-merge.yaml
kubectl wait --for=condition=complete --timeout=24h job/seedlm-merge
kubectl logs job/seedlm-merge
