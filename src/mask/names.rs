//! Built-in name lists for the `name`, `first_name` and `last_name` transformers: common given names
//! and surnames of several languages, ASCII only, so a masked value is valid in any encoding.

pub const FIRST: &[&str] = &[
    "Ada", "Adam", "Aisha", "Alan", "Alice", "Amara", "Amir", "Ana", "Anna", "Arjun", "Ava", "Ben",
    "Bruno", "Carla", "Carlos", "Chen", "Chloe", "Clara", "Daniel", "David", "Diego", "Elena",
    "Eli", "Emma", "Erik", "Eva", "Fatima", "Felix", "Finn", "Grace", "Hana", "Hannah", "Hugo",
    "Ines", "Ivan", "Jack", "James", "Jana", "Jin", "Johan", "Jonas", "Julia", "Kai", "Karim",
    "Kenji", "Laila", "Lara", "Lea", "Leo", "Lina", "Lucas", "Lucia", "Luis", "Maja", "Marco",
    "Maria", "Mateo", "Maya", "Mia", "Mila", "Nadia", "Nico", "Nina", "Noah", "Nora", "Olga",
    "Omar", "Oscar", "Paula", "Pedro", "Priya", "Rafael", "Ravi", "Rosa", "Ruth", "Sam", "Sara",
    "Sofia", "Tariq", "Theo", "Tom", "Uma", "Vera", "Victor", "Wei", "Yara", "Yusuf", "Zoe",
];

pub const LAST: &[&str] = &[
    "Abbott", "Adler", "Alvarez", "Andersen", "Bauer", "Becker", "Berg", "Brown", "Castro", "Chen",
    "Costa", "Cruz", "Dahl", "Diaz", "Dubois", "Eriksen", "Evans", "Fischer", "Garcia", "Gomez",
    "Gruber", "Hansen", "Hart", "Huber", "Ito", "Jansen", "Jensen", "Kato", "Keller", "Khan",
    "Kim", "Klein", "Kowalski", "Lang", "Larsen", "Lee", "Lopez", "Meyer", "Moreau", "Morris",
    "Nagy", "Nielsen", "Novak", "Okafor", "Olsen", "Park", "Patel", "Perez", "Petrov", "Quinn",
    "Reyes", "Richter", "Rossi", "Sato", "Schmidt", "Silva", "Singh", "Smith", "Suzuki", "Tanaka",
    "Torres", "Vogel", "Wagner", "Walker", "Weber", "Wong", "Yamada", "Young", "Zimmer",
];
