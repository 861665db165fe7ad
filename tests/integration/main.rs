mod test_redis;
mod wire_roundtrip;
