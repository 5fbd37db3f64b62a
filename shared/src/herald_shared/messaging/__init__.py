"""RabbitMQ: topology, connections, publishing and the consumer runtime every consumer shares."""
