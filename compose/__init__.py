"""Files of the Docker stack (docker-compose.yml): the Django settings profiles
(development.env, production.env), Redis's ACL (redis/), the nginx gate in
front of Flower (flower-gate/), and the generator of the stack's secrets:

    python -m compose.secrets
"""
