"""Small helpers with no domain knowledge: clock, ids, pagination, money, resilience."""
