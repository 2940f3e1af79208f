package testenv

// Workload is a small application for tests that drive real clients: a
// ConfigMap, a Deployment, a Pod and a ServiceAccount. Without a kubelet its
// pods never run, which connect requests (exec, logs) then report as errors.
const Workload = `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: "1"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:dev
---
apiVersion: v1
kind: Pod
metadata:
  name: solo
spec:
  containers:
  - name: app
    image: app:dev
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: robot
`
