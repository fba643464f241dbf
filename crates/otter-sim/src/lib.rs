//! A NOR-flash simulator and otter's virtual ESP32 device (placeholder).
