{
  "payload": "ewogICJlbnRyaWVzIjogewogICAgImhlbGxvLm8iOiAic2hhMjU2OjAwIgogIH0KfQo=",
  "payloadType": "application/vnd.in-toto+json",
  "signatures": [
    {
      "keyid": "sha256:264a0bcc8980a05bde62b9cca52cff4af34eebb5367edffa6c7dbad67e4c8dc1",
      "sig": "MEUCIQDQ17yg+vW2bbmmaEelKGSGHy+Bfdbs0aYbSHyC56g8zQIgc6ygEuGo0klhvkVkAI6DzjRhVdu3ngKS+l/0DsMTlX8="
    }
  ]
}
