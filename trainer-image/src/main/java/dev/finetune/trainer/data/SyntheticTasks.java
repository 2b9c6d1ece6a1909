package dev.finetune.trainer.data;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;

/**
 * Small instruction tasks the project generates itself, so a job needs no data file: reverse a word,
 * upper-/lower-case a phrase, add or subtract two numbers, repeat a word, name its first letter, count its
 * letters. Seeded: the same size and seed give the same records.
 */
public final class SyntheticTasks {
  public static final String[] WORDS = {
      "apple", "river", "stone", "cloud", "green", "tiger", "piano", "light", "ocean", "bread", "chair", "dream",
      "earth", "flame", "grape", "house", "juice", "knife", "lemon", "magic", "night", "olive", "pearl", "queen",
      "robot", "sugar", "table", "union", "voice", "water", "zebra", "amber", "beach", "candy", "daisy", "eagle",
      "frost", "ghost", "honey", "ivory", "jelly", "koala", "lunar", "mango", "noble", "orbit", "panda", "quilt",
      "radar", "solar", "tulip", "urban", "vivid", "whale", "yacht", "cat", "dog", "sun", "moon", "tree", "bird",
      "fish", "book", "rain", "snow", "wind", "fire", "gold", "blue", "red"};

  private SyntheticTasks() {}

  public static List<Record> generate(int size, long seed) {
    Random rnd = new Random(seed);
    List<Record> out = new ArrayList<>(size);
    for (int i = 0; i < size; i++) {
      out.add(task(rnd));
    }
    return out;
  }

  private static String word(Random rnd) {
    return WORDS[rnd.nextInt(WORDS.length)];
  }

  private static Record task(Random rnd) {
    switch (rnd.nextInt(8)) {
      case 0: {
        String w = word(rnd);
        return new Record("Reverse the word.", w, new StringBuilder(w).reverse().toString());
      }
      case 1: {
        String p = word(rnd) + " " + word(rnd);
        return new Record("Convert the phrase to upper case.", p, p.toUpperCase(Locale.ROOT));
      }
      case 2: {
        String p = (word(rnd) + " " + word(rnd)).toUpperCase(Locale.ROOT);
        return new Record("Convert the phrase to lower case.", p, p.toLowerCase(Locale.ROOT));
      }
      case 3: {
        int a = rnd.nextInt(50);
        int b = rnd.nextInt(50);
        return new Record("Add the two numbers.", a + " + " + b, Integer.toString(a + b));
      }
      case 4: {
        int a = 10 + rnd.nextInt(90);
        int b = rnd.nextInt(a);
        return new Record("Subtract the second number from the first.", a + " - " + b, Integer.toString(a - b));
      }
      case 5: {
        String w = word(rnd);
        return new Record("Repeat the word twice.", w, w + " " + w);
      }
      case 6: {
        String w = word(rnd);
        return new Record("What is the first letter of the word?", w, w.substring(0, 1));
      }
      default: {
        String w = word(rnd);
        return new Record("How many letters does the word have?", w, Integer.toString(w.length()));
      }
    }
  }
}
